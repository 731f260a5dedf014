"""Checkpoints: what they hold and how ranks capture and restore it (``state.py``), and the files in
the run dir with atomic writes, verified reads and retention (``store.py``)."""
