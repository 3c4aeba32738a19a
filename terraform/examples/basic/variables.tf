variable "project_id" {
  description = "Project to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the function, triggers and Scheduler jobs."
  type        = string
  default     = "europe-west1"
}

variable "firestore_location" {
  description = "Location of the new Firestore database (eur3, nam5, or a region)."
  type        = string
  default     = "eur3"
}
