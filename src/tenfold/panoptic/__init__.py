"""Panoptic part segmentation (PanopticPartFormer++, arXiv:2301.00954).

Data and metrics: ``format`` (uid codec, spec files, label/prediction files), ``metrics`` (PQ, PartPQ,
part mIoU, PWQ (provisional) from one joint histogram per image), ``evaluator`` (folders, processes,
the ``tenfold eval-parts`` command), ``merge`` (panoptic + parts -> part-aware panoptic), ``corrupt``
(systematic prediction errors), ``oracle`` (adapter to the panoptic_parts reference).
"""
