"""Linli's Streamlit dashboard for managers: `streamlit run dashboards/app.py`."""
