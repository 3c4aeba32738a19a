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
  description = "Emails of the function, event delivery and scheduler service accounts, and of the reconciler's runtime and Scheduler accounts (null when reconcile.enabled is false)."
  value = {
    function            = google_service_account.function.email
    events              = google_service_account.trigger.email
    scheduler           = google_service_account.scheduler.email
    reconcile           = one(google_service_account.reconcile[*].email)
    reconcile_scheduler = one(google_service_account.reconcile_scheduler[*].email)
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
  description = "Push subscription or Eventarc trigger ids by topic, and the subscriptions rules name (by their full name)."
  value = merge(
    { for k, s in google_pubsub_subscription.push : k => s.id },
    { for k, s in google_pubsub_subscription.named : k => s.id },
    { for k, t in google_eventarc_trigger.pubsub : k => t.name },
  )
}

output "task_queues" {
  description = "Cloud Tasks queue ids of the rules with flow control (limits: / batch:), each with its full id and the rules that launch through it."
  value = {
    for k, q in google_cloud_tasks_queue.rule : k => { id = q.id, rules = local.task_queues[k].rules }
  }
}

output "scheduler_jobs" {
  description = "Cloud Scheduler job ids by rule name."
  value       = { for k, j in google_cloud_scheduler_job.rule : k => j.id }
}

output "dead_letter_topic" {
  description = "Dead-letter topic, projects/P/topics/T (the function's TRIGGERS_DEAD_LETTER_TOPIC); null when dead letters are disabled."
  value       = one(google_pubsub_topic.dead_letter[*].id)
}

output "dead_letter_subscription" {
  description = "Subscription that holds the dead letters, projects/P/subscriptions/S: re-drive with `triggers replay --from-topic <this>`; null when dead letters are disabled."
  value       = one(google_pubsub_subscription.dead_letter[*].id)
}

output "reconcile_function_name" {
  description = "Name of the reconciler function (entry point handle_reconcile); null when reconcile.enabled is false."
  value       = one(google_cloudfunctions2_function.reconcile[*].name)
}

output "reconcile_function_uri" {
  description = "HTTPS URL of the reconciler (handle_reconcile), the Scheduler job's target; null when reconcile.enabled is false."
  value       = one(google_cloudfunctions2_function.reconcile[*].url)
}

output "reconcile_scheduler_job" {
  description = "Full name (projects/P/locations/R/jobs/J) of the Cloud Scheduler job that calls the reconciler; null when reconcile.enabled is false."
  value       = one(google_cloud_scheduler_job.reconcile[*].id)
}

output "firestore_database" {
  description = "Ledger database: project, database id and collection."
  value = {
    project    = local.firestore_project
    database   = var.firestore.database
    collection = var.firestore.collection
  }
}

output "monitoring" {
  description = "Metric types of the log-based metrics by id (matched, launched, duplicate, rejected, retried, dead_lettered, executions, reconcile_errors), alert policy names by id and the dashboard id; empty / null when monitoring is off."
  value = {
    metrics = local.metric_types
    alert_policies = merge(
      { for id, policy in google_monitoring_alert_policy.count : id => policy.name },
      { for policy in google_monitoring_alert_policy.dead_letter_backlog : "dead_letter_backlog" => policy.name },
    )
    dashboard = one(google_monitoring_dashboard.this[*].id)
  }
}
