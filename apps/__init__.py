"""tinyinterp's Streamlit app (entry: ``apps/app.py``; command: ``tinyinterp app``, see ``apps/cli.py``)."""
