"""Code that runs inside each worker actor: the actor, building a rank's components, the training
loop and its step, evaluation, gradient health, per-rank statistics, and how the loop reports."""
