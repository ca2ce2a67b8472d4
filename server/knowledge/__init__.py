"""The knowledge base in the store: versioned entries, publishing without a restart, the editor's API, the report of
questions the bot could not answer, and `hotline knowledge export|import`."""
