"""The bodies of the `minicaffe` command's longer verbs (Caffe's tools/ folder)."""
