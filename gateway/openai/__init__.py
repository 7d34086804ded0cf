"""OpenAI's Videos API on ``/v1`` (issue 21): an adapter at the edge over the same job service.

``protocol.py`` is its contract, ``serving.py`` the translation into native job requests and back,
``router.py`` the routes, ``errors.py`` OpenAI's error shape (on /v1 only).
"""
