"""Reading inputs: what ``--images`` names (``sources``) and images decoded into model arrays (``images``)."""
