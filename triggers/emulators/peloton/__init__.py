"""The Uber Peloton job manager emulator: the v0 ``JobManager`` procedures (and
``TaskManager::Stop``) over YARPC-HTTP with the JSON encoding, batch jobs whose instances run as
local processes. Served by the shared shell in `triggers.emulators.http`.
"""
