"""Training pipeline: BUSI folder -> calibrated, evaluated .tflite + model card."""

from . import quiet

quiet.apply()  # before anything imports TensorFlow; BUSI_VERBOSE=1 keeps its logs
