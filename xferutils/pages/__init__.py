"""The book's machinery: questions and verdicts (``claims``), the ledger, results files and
glue (``results``), figures (``plotting``) and timers (``timing``)."""
