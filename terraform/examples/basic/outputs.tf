output "function_uri" {
  description = "HTTPS URL of the function."
  value       = module.triggers.function_uri
}

output "scheduler_jobs" {
  description = "Cloud Scheduler job ids by rule name."
  value       = module.triggers.scheduler_jobs
}

output "unwired_rules" {
  description = "Rules without a delivery created by the module."
  value       = module.triggers.unwired_rules
}

output "reconcile_function_uri" {
  description = "HTTPS URL of the reconciler, called by the Scheduler job every 10 minutes."
  value       = module.triggers.reconcile_function_uri
}

output "dead_letter_subscription" {
  description = "Where rejected events wait: triggers replay --from-topic <this>."
  value       = module.triggers.dead_letter_subscription
}
