"""Scaling studies: the sweep summary (:mod:`.summary`), the frontier / power-law / compute-optimal analysis
(:mod:`.analysis`) and its plots (:mod:`.plots`). Used by ``analyses/scaling.py`` (figures) and the app's
Scaling page; the sweep programs that train the runs live in ``training/``.
"""
