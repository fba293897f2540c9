"""fusednn's benchmark suites: fusednn side by side with PyTorch CPU and, on a GPU, cuDNN,
each row with its fraction of the measured hardware limit. `fusednn bench` (run.py) runs
them; pip install "fusednn[bench]" brings PyTorch, the peer they compare against."""
