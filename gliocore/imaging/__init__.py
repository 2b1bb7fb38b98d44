"""Reading and checking images: NIfTI/NRRD volumes (hostile files refused from the header),
label maps of segmentation backends and references, and the bundled reference atlases (SRI24,
MNI152) that the demo generator and the location stage share.

May import: the vocabulary (``types``, ``errors``, ``settings``, ``versions``) only.
"""
