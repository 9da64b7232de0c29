"""Places: street offices, communities, grids and buildings (one installation serves many communities)."""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class StreetOffice(SQLModel, table=True):
    """A street office (街道办事处), the level above communities."""

    __tablename__ = "street_office"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True, index=True)
    name: str = Field(max_length=100)


class Community(SQLModel, table=True):
    """A community (社区) run by a street office."""

    __tablename__ = "community"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True, index=True)
    name: str = Field(max_length=100)
    street_office_id: int = Field(foreign_key="street_office.id", index=True)


class Grid(SQLModel, table=True):
    """A grid (网格): the unit a grid worker looks after."""

    __tablename__ = "grid"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True, index=True)
    name: str = Field(max_length=100)
    community_id: int = Field(foreign_key="community.id", index=True)
    grid_worker_id: int | None = Field(default=None, foreign_key="staff.id")


class Building(SQLModel, table=True):
    """A building (楼栋) with its location."""

    __tablename__ = "building"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True, index=True)
    name: str = Field(max_length=100)
    community_id: int = Field(foreign_key="community.id", index=True)
    grid_id: int = Field(foreign_key="grid.id", index=True)
    lat: float
    lon: float
