"""Per-trial result JSON -> one DataFrame (collect, parse), analysis, reports, figures, tables.

Imports pandas (and matplotlib for figures): the `sweep` CLI imports this package only in
the subcommands that need it (collect, report, best).
"""
