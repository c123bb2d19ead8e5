"""One folder per paper: its experiments, claims, presets (quick = the config defaults, standard, paper),
figures and benchmark. The papers compose the method families; no family imports a paper."""
