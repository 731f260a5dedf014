"""Components built from config by ``_target_``: model, data, loss, optimizer, scheduler, metrics,
step. ``spec.py`` is the mechanism; one file per kind holds its built-in schemas and how it is built;
``registry.py`` checks a whole config's components on the driver and builds them on a worker."""
