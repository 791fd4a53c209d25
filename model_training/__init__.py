"""Training pipeline: BUSI folder -> calibrated, evaluated .tflite + model card."""
