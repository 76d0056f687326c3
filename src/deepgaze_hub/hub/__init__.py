"""Publishing and fetching models: Hugging Face Hub files, the registry of named models."""
