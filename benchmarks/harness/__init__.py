"""The study harness behind ``benchmarks/evaluate.py``: its datasets, runs, records, statistics, figures and report.

Not part of the installed package: a plain package imported by the scripts of ``benchmarks/`` (which put this
folder's parent on ``sys.path``). The runs go through the package's :func:`sctransformer_tools.bm.run`; what is
specific to the study lives here:

- :mod:`.datasets`: the four real splits (``load_split``, ``DATASETS``, the pbmc68k label map);
- :mod:`.study`: :func:`~harness.study.evaluate`, ``sct.bm.run`` plus the study's measurements, one record per run;
- :mod:`.attention`, :mod:`.embedding`: attention vs regulons and TF activity, embedding scores, UMAPs;
- :mod:`.resources`: wall time and peak memory; :mod:`.celltypist_compat`: CellTypist on scikit-learn >= 1.8;
- :mod:`.records`: records and their JSON file; :mod:`.stats`: paired and pooled comparisons;
- :mod:`.figures` and :mod:`.report`: the figures, tables and the reading generated from the numbers.
"""
