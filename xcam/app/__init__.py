"""The application: the CLI, the explain job, reports and output files, image loading, framework loading and
the demo zoo. It may import the adapters; nothing in the core (``xcam`` outside this package) imports it."""
