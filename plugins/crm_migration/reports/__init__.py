"""The import report: counts, quarantine, merges, gates, timings and the freeze's verdict as JSON (report),
HTML (report_html) and SVG charts (charts).

May import: model, source, rules, matching, stages, checks.
"""
