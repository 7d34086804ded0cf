"""Tenants (issue 24): API keys managed at run time, stored hashed in the job store (SQLite or
Redis), their audit log, their usage per day and their quotas. Beside the jobs layer: the HTTP
edge resolves callers through it, and the job store reports each ended job's work to it."""
