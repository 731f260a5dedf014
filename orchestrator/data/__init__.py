"""Data for the workers: the contract (``module.py``), the built-in in-memory datasets
(``builtin.py``, ``memory.py``, shared through Ray's object store by ``object_store.py``), and each
rank's sampler and DataLoader (``loader.py``)."""
