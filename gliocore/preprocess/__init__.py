"""Raw scans in: DICOM import, sequence identification, N4, rigid co-registration to T1c, brain
extraction and QC, ending in BraTS-style NIfTI that the rest of GlioScope reads as today."""
