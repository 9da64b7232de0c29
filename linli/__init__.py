"""Linli (邻里): smart-community governance — the domain core (no Prefect flow code here)."""

__version__ = "0.1.0"
