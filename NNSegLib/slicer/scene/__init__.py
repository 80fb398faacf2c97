"""The MRML scene: the only room of NNSegLib that knows nodes.

``mrml`` (the only ``import slicer``, lazily: volume, segmentation, table and chart nodes ⇄
arrays), ``ras_geometry`` (IJK→RAS matrices ⇄ NNSegLib's LPS geometry), ``terminology``
(label names → Slicer terminology and colours), ``dataset`` (scene cases → an nnU-Net raw
dataset), ``prediction`` (scene volumes → a prediction and back as segments), ``review``
(a batch case in the scene: volumes, overlay, jump, add the corrected case), ``case_list``
(the Dataset panel's cases as node references of the parameter node) and ``training_chart``
(loss and Dice curves in a table and chart node).

Imports the library's stages and ``util``; never ``NNSegLib.slicer``'s panels or jobs.
"""
