"""Finding one customer among rows: blocking and weighted rules (dedupe), Fellegi-Sunter estimation and
scoring through Splink (linkage), the lot's pairs in partitions (partitioned), clusters that keep their
target id (clusters), one record from each cluster (survivorship).

May import: model, source, rules.
"""
