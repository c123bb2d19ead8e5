"""``python -m tenfold ...``: the ``tenfold`` command (also the form torchrun takes: ``torchrun ... -m tenfold run``)."""

from tenfold.cli import main

main()
