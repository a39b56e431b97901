"""Training infrastructure: state, optimiser, steps, checkpoints, logging and the loop."""
