"""The app's pages, one script each (run by ``st.navigation`` in ``apps/app.py``; never imported).

``PAGES`` lists them in menu order as (script name, title); the first is the default page.
The folder is deliberately not called ``pages/``: Streamlit treats a ``pages/`` folder beside the entry
script as a legacy multipage app and then runs ``/neurons`` without ``app.py`` (no sidebar, no run).
"""

PAGES = (
    ("runs", "Runs"),
    ("neurons", "Neurons"),
    ("neuron_table", "Neuron table"),
    ("dictionaries", "Dictionaries"),
    ("features", "Features"),
    ("feature_table", "Feature table"),
    ("heads", "Heads"),
    ("emergence", "Emergence"),
    ("generate", "Generate"),
    ("compare", "Compare"),
    ("grades", "Grades"),
    ("scaling", "Scaling"),
    ("attribution", "Attribution"),
)
PAGE_NAMES = tuple(name for name, _ in PAGES)
# No page icons: Streamlit turns a page's icon into the tab's favicon, fetched from fonts.gstatic.com.
