"""Image in, video out: input preparation, the Triton client, encoding, outputs and the result
cache. Imports nothing from gateway.jobs: the job store reaches it through ``CacheIndex``."""
