"""The deployed function: request handling (`app`), settings, OIDC auth, logs, dead letters.

`triggers/main.py` is the file functions-framework loads; it builds one `App` from `Settings`
and hands it every request. Nothing here is needed to load rules or plan runs.
"""
