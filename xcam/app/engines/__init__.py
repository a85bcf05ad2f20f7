"""Engines that run the per-batch function (``batch``): in this process (``local``) or on Ray (``ray``)."""
