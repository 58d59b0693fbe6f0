from lstm_onnx.cli.main import main

if __name__ == "__main__":  # the server's parse process (spawn) imports this module again
    main()
