from lstm_onnx.cli.main import main

main()
