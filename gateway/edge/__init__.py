"""The HTTP edge: who is calling, from where, how often, how large; and the request log."""
