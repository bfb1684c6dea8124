"""The semantic core: data sets, teachers, the pre-stored teacher cache, the student, losses, distillation
and evaluation. Sub-modules import torch; import them directly (``from sdr_tosc.semantic import teachers``).
"""
