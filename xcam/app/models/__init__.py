"""Models: frameworks (adapter + loader), model files, ModelSpec, PyTorch-to-Keras porting and the demo zoo."""
