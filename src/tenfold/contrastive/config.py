"""The contrastive family's plain-data settings, without torch: the methods' names and :class:`TrainConfig`
(the pre-training settings of :func:`tenfold.contrastive.pretrain.pretrain`). ``tenfold config`` resolves the
MPCL experiments' configs from here without importing torch (the package's ``__init__`` loads its exports
lazily)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tenfold.config import Config

METHODS = ("simclr", "simclr-attn", "simsiam", "simsiam-multi", "rewire")
SIAMESE = ("simsiam", "simsiam-multi")


class TrainConfig(Config):
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(128, ge=4)
    optimizer: Literal["sgd", "lars"] = Field(
        "sgd", description="sgd: momentum SGD, weight decay on every parameter; lars: LARS as the official "
        "SimCLR-Attn code (trust ratio per weight tensor, biases and norm parameters excluded from adaptation "
        "and weight decay; tenfold.contrastive.lars)")
    lars_eta: float = Field(1e-3, gt=0, description="LARS trust coefficient (official and solo-learn default 0.001; "
                            "solo-learn's configs also use 0.02)")
    lars_trust: Literal["official", "paper"] = Field(
        "official", description="LARS ratio eta ||w|| / ||g + wd w|| (official code) or eta ||w|| / (||g|| + wd ||w||) "
        "(You et al. Eq. 6, solo-learn)")
    lr_schedule: Literal["cosine", "warmup-cosine"] = Field(
        "cosine", description="cosine: cosine annealing stepped per epoch; warmup-cosine: linear warm-up over the "
        "first `warmup` fraction of the iterations then cosine to 0, stepped per iteration (official "
        "LinearWarmupAndCosineAnneal)")
    warmup: float = Field(0.01, ge=0, lt=1, description="warmup-cosine: warm-up fraction of all iterations "
                          "(official 0.01)")
    lr: float = Field(0.1, gt=0, description="lr for SimCLR-type methods")
    siam_lr: float = Field(0.2, gt=0, description="lr for SimSiam-type methods")
    probe_lr: float | None = Field(None, gt=0, description="online linear probe lr (None: the method's lr); under "
                                   "lars the probe is plain momentum SGD without weight decay")
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    tau: float = Field(0.5, gt=0, description="InfoNCE temperature")
    beta: float = Field(0.5, ge=0, le=1, description="SimSiam-Multi memory weight")
    mix_after: int = Field(4, ge=-1, description="SimSiam-Multi: plain SimSiam while the epoch (from 0) is <= this "
                           "(official: epoch_counter <= 50), mixing after it")
    knn_k: int = Field(1, ge=1, description="rewiring: neighbours per anchor")
    rewire_beta: float = Field(0.2, ge=0, le=1, description="rewiring: weight of neighbour positives")
    bank_size: int = Field(0, ge=0, description="SimCLR-type methods: a FIFO memory bank of this many detached, "
                           "normalised embeddings (both views of past batches) used as extra negatives (MoCo; "
                           "lightly's memory_bank_size); 0 = off; ignored by SimSiam-type methods. Checkpointed "
                           "with the stage, so --resume continues with the same queue")
    multi_positive: Literal["mean_log", "log_sum"] = Field(
        "mean_log", description="anchors with several positives (rewiring): mean_log = mean over positives of "
        "-log(e^s_ip / sum_a e^s_ia) (SupCon L_out, the message-passing form); log_sum = -log(sum_p w_ip e^s_ip / "
        "sum_a e^s_ia) (SupCon L_in, solo-learn's simclr_loss); both are NT-Xent with one positive")
    proj_dim: int = Field(64, ge=2, description="SimCLR projector output")
    siam_dim: int = Field(64, ge=4, description="SimSiam projector/predictor width")
    crop_low: float = Field(0.5, gt=0, le=1, description="smallest crop area fraction")
    flip: bool = False
    jitter: float = Field(0.4, ge=0, description="colour-jitter strength s")
    p_gray: float = Field(0.0, ge=0, le=1)
    noise: float = Field(0.1, ge=0, description="Gaussian noise std added to views")
    probe_c: float = Field(1.0, gt=0, description="inverse L2 strength of the offline logistic probe")
    knn_monitor: bool = Field(True, description="online kNN monitor: after every epoch, weighted kNN (cosine) of the "
                              "test split on the frozen encoder features of the train split, logged as knn_acc "
                              "(solo-learn / InstDisc; a monitor, no claim reads it)")
    knn_monitor_k: int = Field(20, ge=1, description="kNN monitor neighbours (solo-learn 20; InstDisc/MoCo demo 200)")
    knn_every: int = Field(1, ge=1, description="kNN monitor after every this many epochs (and after the last)")
    knn_monitor_t: float = Field(0.1, gt=0, description="kNN monitor temperature of the exp(cos / t) votes (MoCo "
                                 "demo 0.1; solo-learn 0.07)")
    positives: Literal["views", "scrambled"] = Field(
        "views", description="views: the second view is of the same sample (the augmentation graph); scrambled: "
        "of a random other sample of the batch (wrong positive pairs: ablation of the probe claims)")
    attention: bool = Field(True, description="false: SimCLR-Attn uses uniform anchor weights, i.e. is SimCLR "
                            "(identical to the base: no ablation; see attention_weights)")
    attention_weights: Literal["similarity", "permuted"] = Field(
        "similarity", description="SimCLR-Attn's anchor weights. similarity: a_i = softmax_i cos(h_i, h_p(i)) (the "
        "method); permuted: the same detached weights given to the anchors in a random order each step (the "
        "control: same spread of weights, not tied to the anchor's view agreement; ablation of the SimCLR-Attn "
        "claim)")
    bank_rows: Literal["own", "shuffled"] = Field(
        "own", description="SimSiam-Multi's memory rows. own: sample i's target mixes in M[i], its own projection of "
        "the previous epoch (the method); shuffled: M[j] of another sample j of the batch, same beta and "
        "mix_after (the control; ablation of the SimSiam-Multi claim)")
    rewire_partners: Literal["knn", "random"] = Field(
        "knn", description="rewiring's extra positives. knn: the knn_k nearest rows in sg(z) (the method); random: "
        "knn_k rows drawn uniformly at the same weight rewire_beta / knn_k (the control)")
