"""The report step (rule ``report``): tables, intervals, figures, the HTML page and provenance.

:mod:`.build` assembles ``report/`` from a run's manifest (the rule's entry point); :mod:`.tables`,
:mod:`.ceiling` and :mod:`.statistics` compute the summary, :mod:`.figures` and :mod:`.html` draw
it, :mod:`.provenance` records what made it, :mod:`.compare` puts two runs side by side, and
:mod:`.scorecard` scores any prediction with floor and ceiling from a notebook. No module here
imports torch.
"""
