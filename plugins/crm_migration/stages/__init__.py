"""The stage runners against the databases: extract, cleanse, dedupe, transform (run), the load (load);
what the target holds and the links it must keep (content); data owners' corrections, waivers and
quarantine CSVs (data_owner); the extract contract check (contract, also a command); checksums by key
range of the legacy rows against the versions the target accounts for (checksums).

May import: model, source, rules, matching.
"""
