output "function_name" {
  description = "Name of the Cloud Functions (gen2) function."
  value       = google_cloudfunctions2_function.this.name
}

output "function_uri" {
  description = "HTTPS URL of the function (handle_http)."
  value       = google_cloudfunctions2_function.this.url
}

output "function_service" {
  description = "The function's Cloud Run service name."
  value       = google_cloudfunctions2_function.this.service_config[0].service
}

output "service_accounts" {
  description = "Emails of the function, event delivery and scheduler service accounts."
  value = {
    function  = google_service_account.function.email
    events    = google_service_account.trigger.email
    scheduler = google_service_account.scheduler.email
  }
}

output "rules" {
  description = "Rule names read from the rules file."
  value       = sort(keys(local.rules))
}

output "unwired_rules" {
  description = "Enabled rules this module creates no delivery for (no bucket, topic or schedule): their events must reach the function some other way."
  value       = local.unwired_rules
}

output "target_jobs" {
  description = "Full names of the Cloud Run jobs the function may run (one IAM binding each)."
  value       = sort(tolist(local.target_jobs))
}

output "storage_triggers" {
  description = "Eventarc trigger ids by \"bucket/event type\"."
  value       = { for k, t in google_eventarc_trigger.storage : k => t.name }
}

output "pubsub_deliveries" {
  description = "Push subscription or Eventarc trigger ids by topic."
  value = merge(
    { for k, s in google_pubsub_subscription.push : k => s.id },
    { for k, t in google_eventarc_trigger.pubsub : k => t.name },
  )
}

output "scheduler_jobs" {
  description = "Cloud Scheduler job ids by rule name."
  value       = { for k, j in google_cloud_scheduler_job.rule : k => j.id }
}

output "dead_letter_topic" {
  description = "Dead-letter topic id (null when there is none)."
  value       = one(google_pubsub_topic.dead_letter[*].id)
}

output "firestore_database" {
  description = "Ledger database: project, database id and collection."
  value = {
    project    = local.firestore_project
    database   = var.firestore.database
    collection = var.firestore.collection
  }
}
