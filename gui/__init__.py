"""labctl's Qt GUI (PyQt6 + pyqtgraph): station panel, protocol runner with generated parameter
forms, live plots, chip heat map with per-cell history, data browser and log.

The GUI holds no protocol logic: it runs `labctl.engine.run_protocol` in a worker thread
(`gui.worker.StationWorker`), which alone touches the instruments; widgets only read parameter
declarations, live-plot declarations and HDF5 files. Start it with `labctl gui`.
"""
