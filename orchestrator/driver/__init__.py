"""Code that runs in the driver process: the Ray session, the controller and its gang of worker
actors, the run's record sink, TensorBoard and the terminal."""
