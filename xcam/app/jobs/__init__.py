"""The jobs: ``xcam explain`` (images; videos and volumes in ``clips``), ``xcam evaluate`` and ``xcam demo``."""
