"""Evaluation of local answers and routing: eval items and graders, metrics (APGR, skill, AUROC, cloud share
at 95%), the runner behind `edged eval`, and the calibration behind `edged calibrate`. See docs/routing.md."""
