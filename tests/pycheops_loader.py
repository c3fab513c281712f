"""Run by test_lightcurve_files in pycheops' own environment (pycheops pins numpy 1.24 and
numba 0.57, which cannot live beside archi's): load one pipe file as pycheops loads PIPE's
output and save (time, flux) to an .npz file. No network: pycheops' configuration file and
the DRP light curve it joins on BJD are written into a temporary home beforehand.

    python load_with_pycheops.py PIPE_FILE FILE_KEY OUT.npz     (HOME set by the caller)
"""

import socket
import sys

import numpy as np


def no_network(*args, **kwargs):
    raise AssertionError("pycheops tried the network")


def main(pipe_file: str, file_key: str, out: str) -> None:
    socket.socket.connect = no_network
    from pycheops import Dataset

    dataset = Dataset.from_pipe_file(pipe_file, file_key=file_key, metadata=False,
                                     verbose=False)
    time, flux, _ = dataset.get_lightcurve(verbose=False)
    np.savez(out, time=np.asarray(time), flux=np.asarray(flux))


if __name__ == "__main__":
    main(*sys.argv[1:4])
