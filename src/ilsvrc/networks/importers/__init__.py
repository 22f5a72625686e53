"""Networks from elsewhere: a flat graph of layers nested into a spec (`graph`), Caffe's prototxt
files (`caffe`, with its own reader of protobuf's text format, `textformat`). No torch here."""
