output "function_uri" {
  description = "HTTPS URL of the function."
  value       = module.triggers.function_uri
}

output "firestore_database" {
  description = "Where the ledger lives: pass it to `triggers runs`."
  value       = module.triggers.firestore_database
}
