variable "project_id" {
  description = "Project to deploy the function, triggers and Scheduler jobs into."
  type        = string
}

variable "region" {
  description = "Region of the function, triggers and Scheduler jobs."
  type        = string
  default     = "europe-west1"
}

variable "firestore_project" {
  description = "Project of the existing Firestore database. null: project_id."
  type        = string
  default     = null
}

variable "firestore_database" {
  description = "Id of the existing Firestore (native mode) database."
  type        = string
}

variable "source_bucket" {
  description = "Existing bucket for the function's source archive."
  type        = string
}
