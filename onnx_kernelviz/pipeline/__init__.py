"""The stages chained for users: ``explain``, ``compare``, the demo, and the files of an explanation."""
