"""Reading the legacy CRM: the extract query, its clock and row hashes (legacy), SQL or export files behind
one interface (sources), anonymisation for rehearsals (anonymise).

May import: model.
"""
